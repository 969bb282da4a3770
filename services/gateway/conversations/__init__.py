"""Conversations kept by the gateway, in the shapes of OpenAI's Conversations API (docs/conversations.md)."""
