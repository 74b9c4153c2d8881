-- A vehicle takes part in an event at most once: composite UNIQUE on the Directus-managed junction
-- event_participation (events <-> vehicles). Idempotent guard, then an assertion.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'event_participation_event_vehicle_unique'
                     AND conrelid = 'event_participation'::regclass) THEN
        ALTER TABLE event_participation
            ADD CONSTRAINT event_participation_event_vehicle_unique UNIQUE (events_id, vehicles_id);
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conname = 'event_participation_event_vehicle_unique' AND contype = 'u') THEN
        RAISE EXCEPTION 'event_participation_event_vehicle_unique is missing';
    END IF;
END
$$;
