-- Orders arriving: one to four a second, for ever (e2e/demo/postgres.sh runs it in the
-- background and `make demo-down` stops it). Each second commits on its own, so the extract
-- sees orders as soon as they are placed. Customers, amounts and currencies are random.
DO $$
BEGIN
  LOOP
    INSERT INTO orders (customer_id, ordered_at, amount, currency)
    SELECT 1 + floor(random() * 500)::int, clock_timestamp(), round((5 + random() * 195)::numeric, 2),
           (ARRAY['EUR', 'USD', 'GBP'])[1 + floor(random() * 3)::int]
    FROM generate_series(1, 1 + floor(random() * 4)::int);
    COMMIT;
    PERFORM pg_sleep(1);
  END LOOP;
END
$$;
