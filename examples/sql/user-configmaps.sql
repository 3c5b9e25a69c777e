-- Sample table for examples/user-configmaps.yaml.
CREATE TABLE app_users (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username   text NOT NULL UNIQUE,
  email      text NOT NULL,
  plan       text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'team', 'enterprise')),
  active     boolean NOT NULL DEFAULT true,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- Timestamp change detection compares max(updated_at) between polls, so every
-- update must move it; retiring a user (active = false) is such an update.
CREATE FUNCTION app_users_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;
CREATE TRIGGER app_users_touch BEFORE UPDATE ON app_users
  FOR EACH ROW EXECUTE FUNCTION app_users_touch();
CREATE INDEX app_users_updated_at ON app_users (updated_at);

INSERT INTO app_users (username, email, plan) VALUES
  ('ada', 'ada@example.com', 'enterprise'),
  ('grace', 'grace@example.com', 'team'),
  ('linus', 'linus@example.com', 'free');
