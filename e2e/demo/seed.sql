-- The last ten minutes of orders, about two a second, placed once when the shop is new: the
-- demo's first extract (started at once, for the minute before the demo began) then has rows.
INSERT INTO orders (customer_id, ordered_at, amount, currency)
SELECT 1 + floor(random() * 500)::int, clock_timestamp() - g * interval '500 milliseconds',
       round((5 + random() * 195)::numeric, 2), (ARRAY['EUR', 'USD', 'GBP'])[1 + floor(random() * 3)::int]
FROM generate_series(1, 1200) g
WHERE NOT EXISTS (SELECT FROM orders);
