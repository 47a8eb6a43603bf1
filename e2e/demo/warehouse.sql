-- The warehouse's layers, in the warehouse database: the steps create their tables in them.
CREATE SCHEMA IF NOT EXISTS raw AUTHORIZATION elt;
CREATE SCHEMA IF NOT EXISTS staging AUTHORIZATION elt;
CREATE SCHEMA IF NOT EXISTS mart AUTHORIZATION elt;
