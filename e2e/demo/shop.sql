-- The shop's source table, in the shop database. The generator (generator.sql) inserts into it.
CREATE TABLE IF NOT EXISTS orders (
  order_id bigserial PRIMARY KEY,
  customer_id bigint NOT NULL,
  ordered_at timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  amount numeric(12,2) NOT NULL,
  currency varchar(3) NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_ordered_at ON orders (ordered_at);
GRANT SELECT ON orders TO shop_reader;
