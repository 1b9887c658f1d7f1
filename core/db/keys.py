"""Named statements on `api_keys`."""

from __future__ import annotations

INSERT_KEY = """
INSERT INTO api_keys (id, tenant, name, prefix, digest) VALUES ($1, $2, $3, $4, $5)
RETURNING *
"""
TENANT_OF_DIGEST = "SELECT tenant FROM api_keys WHERE digest = $1 AND revoked_at IS NULL"
TENANTS_OF_DIGESTS = """
SELECT digest, tenant FROM api_keys WHERE digest = ANY($1::bytea[]) AND revoked_at IS NULL
"""
LIST_KEYS = """
SELECT id, tenant, name, prefix, created_at, revoked_at FROM api_keys
WHERE ($1::text IS NULL OR tenant = $1)
ORDER BY tenant, created_at
"""
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING *
"""
