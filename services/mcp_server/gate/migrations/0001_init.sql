-- Users, roles, permissions, hashed API keys, approval requests and the audit chain.
CREATE TABLE roles (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT ''
);

CREATE TABLE role_permissions (
    role TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (role, permission)
);

-- Mirror of the tool catalog, so a tool added later gets the default grants once, and revoked grants stay revoked.
CREATE TABLE tools (
    name TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    risk TEXT NOT NULL,
    read_only INTEGER NOT NULL
);

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL REFERENCES roles(name),
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE api_keys (
    key_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    label TEXT NOT NULL DEFAULT '',
    revoked INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);

CREATE TABLE approval_requests (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    tool TEXT NOT NULL,
    args_hash TEXT NOT NULL,
    args TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'used')),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    decided_by TEXT,
    decided_at REAL,
    reason TEXT,
    used_at REAL
);
CREATE INDEX approval_lookup ON approval_requests (user_name, tool, args_hash, status);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    user_name TEXT NOT NULL,
    role TEXT NOT NULL,
    tool TEXT NOT NULL,
    args TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('allowed', 'denied', 'pending', 'approved', 'rejected', 'error', 'ok')),
    duration_ms REAL NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    row_hash TEXT NOT NULL
);

-- Bumped on every change that a server's in-memory RBAC and key caches must see.
CREATE TABLE auth_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO auth_generation (id, value) VALUES (1, 0);

CREATE TRIGGER users_changed_i AFTER INSERT ON users BEGIN UPDATE auth_generation SET value = value + 1; END;
CREATE TRIGGER users_changed_u AFTER UPDATE ON users BEGIN UPDATE auth_generation SET value = value + 1; END;
CREATE TRIGGER users_changed_d AFTER DELETE ON users BEGIN UPDATE auth_generation SET value = value + 1; END;
CREATE TRIGGER keys_changed_i AFTER INSERT ON api_keys BEGIN UPDATE auth_generation SET value = value + 1; END;
CREATE TRIGGER keys_changed_u AFTER UPDATE ON api_keys BEGIN UPDATE auth_generation SET value = value + 1; END;
CREATE TRIGGER keys_changed_d AFTER DELETE ON api_keys BEGIN UPDATE auth_generation SET value = value + 1; END;
CREATE TRIGGER perms_changed_i AFTER INSERT ON role_permissions BEGIN UPDATE auth_generation SET value = value + 1; END;
CREATE TRIGGER perms_changed_u AFTER UPDATE ON role_permissions BEGIN UPDATE auth_generation SET value = value + 1; END;
CREATE TRIGGER perms_changed_d AFTER DELETE ON role_permissions BEGIN UPDATE auth_generation SET value = value + 1; END;
CREATE TRIGGER roles_changed_d AFTER DELETE ON roles BEGIN UPDATE auth_generation SET value = value + 1; END;

-- The audit trail is append-only for the application; these make an accidental UPDATE or DELETE fail loudly.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
