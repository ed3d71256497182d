-- The demo warehouse: target tables must exist with a primary key; Sluice reads their columns.
DROP SCHEMA IF EXISTS demo CASCADE;
CREATE SCHEMA demo;
CREATE TABLE demo.customers (
    id         integer PRIMARY KEY,
    name       text NOT NULL,
    email      text,
    note       text,
    balance    numeric(12,2),
    updated_at timestamptz
);
CREATE TABLE demo.orders (
    order_id    bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    amount      numeric(12,2) NOT NULL,
    status      text NOT NULL,
    comment     text,
    created_at  timestamp
);
