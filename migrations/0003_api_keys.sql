-- API keys: each bound to a tenant, stored only as a SHA-256 digest of the secret.
-- Keys are 32 random bytes, so a fast digest is safe; a slow hash would buy nothing.

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    tenant      text        NOT NULL,
    name        text        NOT NULL,
    prefix      text        NOT NULL,
    digest      bytea       NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE INDEX api_keys_tenant ON api_keys (tenant, created_at);
