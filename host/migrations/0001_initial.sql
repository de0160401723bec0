-- Hookgate's schema on PostgreSQL. Records are kept as the JSON text the
-- API shows (`record`), beside the columns that queries filter and sort
-- on. Text, not jsonb: a tenant's event data goes out exactly as it came in.

CREATE TABLE settings (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE tenants (
    id         text PRIMARY KEY,
    created_at bigint NOT NULL,
    record     text NOT NULL
);

CREATE TABLE api_keys (
    tenant_id text NOT NULL REFERENCES tenants (id),
    id        text NOT NULL,
    hash      text NOT NULL UNIQUE,
    record    text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE plugins (
    tenant_id text NOT NULL,
    id        text NOT NULL UNIQUE,
    name      text NOT NULL,
    version   integer NOT NULL,
    record    text NOT NULL,
    wasm      bytea NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name, version)
);

CREATE TABLE callbacks (
    tenant_id text NOT NULL,
    id        text NOT NULL,
    name      text NOT NULL,
    record    text NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

CREATE TABLE templates (
    tenant_id text NOT NULL,
    id        text NOT NULL,
    name      text NOT NULL,
    record    text NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, name)
);

-- A callback's run of failed deliveries; no row means none.
CREATE TABLE callback_health (
    callback_id          text PRIMARY KEY,
    consecutive_failures integer NOT NULL,
    failing_since        bigint
);

CREATE TABLE events (
    tenant_id text NOT NULL,
    id        text NOT NULL,
    at        bigint NOT NULL,
    record    text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX events_by_age ON events (at);

-- The delivery queue: a pending delivery is due at `due_at`, and leased to
-- `lease_owner` until `lease_until` while a node attempts it.
CREATE TABLE deliveries (
    tenant_id   text NOT NULL,
    id          text NOT NULL,
    callback_id text NOT NULL,
    status      text NOT NULL,
    created_at  bigint NOT NULL,
    due_at      bigint,
    lease_owner text,
    lease_until bigint,
    record      text NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status = 'pending';
CREATE INDEX deliveries_due_by_callback ON deliveries (callback_id, due_at)
    WHERE status = 'pending';
CREATE INDEX deliveries_leased ON deliveries (callback_id, lease_until)
    WHERE status = 'pending' AND lease_until IS NOT NULL;
CREATE INDEX deliveries_by_callback ON deliveries (tenant_id, callback_id, id);
CREATE INDEX deliveries_by_age ON deliveries (created_at) WHERE status <> 'pending';

CREATE TABLE activations (
    tenant_id   text NOT NULL,
    callback_id text NOT NULL,
    id          text NOT NULL,
    at          bigint NOT NULL,
    record      text NOT NULL,
    PRIMARY KEY (tenant_id, callback_id, id)
);
CREATE INDEX activations_by_age ON activations (at);
