-- Sample tables for examples/app-rollouts.yaml.
CREATE TABLE apps (
  name            text PRIMARY KEY CHECK (name ~ '^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$'),
  image           text NOT NULL,
  replicas        integer NOT NULL DEFAULT 1,
  -- ClusterTarget names this app runs on; Rowcast keeps only those the DQR's
  -- targets also list.
  target_clusters text[] NOT NULL DEFAULT '{}'
);

-- Written by statusUpdateQueryTemplate: one row per app per cluster.
CREATE TABLE app_status (
  app_name       text NOT NULL REFERENCES apps (name) ON DELETE CASCADE,
  cluster        text NOT NULL,
  ready_replicas integer,
  observed_at    timestamptz NOT NULL,
  PRIMARY KEY (app_name, cluster)
);

-- spec.ledger: Rowcast creates rowcast_ledger (one row per managed object per
-- cluster) on its first sync, with the shape docs/database.md shows under
-- "The fleet ledger". A DBA may create it in advance from that DDL instead.

-- Notify change detection: Rowcast LISTENs on rowcast_apps. The payload is
-- informational; any notification triggers a (debounced) sync.
CREATE FUNCTION apps_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('rowcast_apps', TG_OP);
  RETURN NULL;
END
$$;
CREATE TRIGGER apps_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON apps
  FOR EACH STATEMENT EXECUTE FUNCTION apps_notify();

INSERT INTO apps (name, image, replicas, target_clusters) VALUES
  ('checkout', 'registry.example.com/checkout:2.4.0', 3, '{east-1,hub}'),
  ('search', 'registry.example.com/search:5.1.3', 2, '{east-1}');
