-- positions: the high-volume GPS stream. Directus does not manage it, so it lives in the pre-schema phase.
-- A TimescaleDB hypertable where the extension can be used, else a plain table with the same columns.
-- device_id / vehicle_id refer to Directus-managed collections, which do not exist yet at this point:
-- that is why there are no foreign keys here.
CREATE TABLE IF NOT EXISTS positions (
    time        timestamptz      NOT NULL,
    device_id   integer          NOT NULL,
    vehicle_id  integer,
    latitude    double precision NOT NULL,
    longitude   double precision NOT NULL,
    altitude_m  real,
    speed_kmh   real,
    heading_deg real,
    accuracy_m  real
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')
       OR (EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
           AND current_setting('shared_preload_libraries') LIKE '%timescaledb%') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('positions', 'time', if_not_exists => TRUE);
        RAISE NOTICE 'positions: TimescaleDB hypertable';
    ELSE
        RAISE NOTICE 'positions: TimescaleDB is not available on this server; created as a plain table with the same columns';
    END IF;
END
$$;

CREATE INDEX IF NOT EXISTS positions_device_time_idx ON positions (device_id, time DESC);
