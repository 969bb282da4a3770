"""Request and response bodies, and the limits every text goes through before it reaches the model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from services.common.errors import InvalidInput, PayloadTooLarge


class EmbedRequest(BaseModel):
    texts: list[str] = Field(description="Texts to embed, in order; each must contain a non-blank character.")


class EmbedResponse(BaseModel):
    embeddings: list[list[float]] = Field(description="One unit-length vector per text, in request order.")
    model: str
    dim: int
    truncated: list[int] = Field(description="Indices of texts cut to EMBEDDING_MAX_CHARS before embedding.")


class OpenAIEmbeddingRequest(BaseModel):
    input: str | list[str] = Field(description="One text or a list of texts (token arrays are not supported).")
    model: str | None = Field(None, description="A name from GET /v1/models; omitted means the service's model.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, description="Must equal the model's dimension when given.")
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _no_token_arrays(cls, value: object) -> object:
        if isinstance(value, list) and value and not isinstance(value[0], str):
            raise ValueError("token arrays are not supported; send text")
        return value


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage
    truncated: list[int] = Field(description="Suite extension: indices of texts cut to EMBEDDING_MAX_CHARS.")


@dataclass(frozen=True)
class Prepared:
    texts: list[str]
    truncated: list[int]


def prepare_texts(texts: list[str], field: str, max_texts: int, max_chars: int) -> Prepared:
    """Apply the limits: 422 for no text or a blank one, 413 for too many, long ones cut and reported."""
    if not texts:
        raise InvalidInput(f"{field} must hold at least one text", param=field)
    if len(texts) > max_texts:
        raise PayloadTooLarge(
            f"{field} holds {len(texts)} texts; at most {max_texts} are accepted per request (EMBEDDING_MAX_TEXTS)",
            param=field,
        )
    out = list(texts)
    truncated: list[int] = []
    for index, text in enumerate(texts):
        if not text.strip():
            raise InvalidInput(f"{field}[{index}] is empty; every text needs a non-blank character",
                               param=f"{field}.{index}")
        if not text.isascii():
            _check_encodable(text, f"{field}.{index}")
        if len(text) > max_chars:
            out[index] = text[:max_chars]
            truncated.append(index)
    return Prepared(out, truncated)


def _check_encodable(text: str, param: str) -> None:
    # JSON can carry lone surrogates ("\ud800"); the tokenizer cannot, and would fail with a 500.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{param.replace('.', '[', 1)}] is not valid Unicode (lone surrogate)",
                           param=param) from None
