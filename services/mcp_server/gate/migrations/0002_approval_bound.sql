-- What an approval is bound to besides the call's arguments (JSON, e.g. the staged tree of a git_commit);
-- NULL for tools that bind nothing. A call runs under an approval only while this still holds.
ALTER TABLE approval_requests ADD COLUMN bound TEXT;
