-- The demo's roles, in the postgres database (run by e2e/demo/postgres.sh as the superuser):
-- `elt` owns the warehouse's layers, `shop_reader` may only read the shop's orders. Passwords
-- come from psql variables and are set on every run, so re-running the demo keeps them valid.
SELECT 'CREATE ROLE elt LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elt') \gexec
SELECT 'CREATE ROLE shop_reader LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shop_reader') \gexec
ALTER ROLE elt PASSWORD :'elt_password';
ALTER ROLE shop_reader PASSWORD :'reader_password';
SELECT 'CREATE DATABASE shop' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'shop') \gexec
SELECT 'CREATE DATABASE warehouse OWNER elt' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'warehouse') \gexec
