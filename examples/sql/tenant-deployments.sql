-- Sample table for examples/tenant-deployments.yaml.
CREATE TABLE tenants (
  slug      text PRIMARY KEY CHECK (slug ~ '^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$'),
  image_tag text NOT NULL,
  plan      text NOT NULL,
  replicas  integer NOT NULL DEFAULT 2 CHECK (replicas BETWEEN 1 AND 20),
  status    text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'))
);

INSERT INTO tenants (slug, image_tag, plan, replicas, status) VALUES
  ('acme', '1.8.2', 'enterprise', 4, 'active'),
  ('globex', '1.8.2', 'team', 2, 'active'),
  ('initech', '1.7.9', 'team', 2, 'suspended');
