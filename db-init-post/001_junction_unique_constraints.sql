-- Composite UNIQUE constraints on the Directus-managed M2M junctions: a user, vehicle or device belongs to an
-- organization at most once. The snapshot format cannot express them, and the tables exist only after
-- schema-apply: hence the post-schema phase. Each guard is idempotent; the last block asserts the result.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'organization_users_org_user_unique'
                     AND conrelid = 'organization_users'::regclass) THEN
        ALTER TABLE organization_users
            ADD CONSTRAINT organization_users_org_user_unique UNIQUE (organizations_id, directus_users_id);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'organization_vehicles_org_vehicle_unique'
                     AND conrelid = 'organization_vehicles'::regclass) THEN
        ALTER TABLE organization_vehicles
            ADD CONSTRAINT organization_vehicles_org_vehicle_unique UNIQUE (organizations_id, vehicles_id);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'organization_devices_org_device_unique'
                     AND conrelid = 'organization_devices'::regclass) THEN
        ALTER TABLE organization_devices
            ADD CONSTRAINT organization_devices_org_device_unique UNIQUE (organizations_id, devices_id);
    END IF;
END
$$;

DO $$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(c, ', ') INTO missing
    FROM unnest(ARRAY['organization_users_org_user_unique',
                      'organization_vehicles_org_vehicle_unique',
                      'organization_devices_org_device_unique']) AS c
    WHERE NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = c AND contype = 'u');
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'junction unique constraints missing: %', missing;
    END IF;
END
$$;
