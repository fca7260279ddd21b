"""A schema that is not the book collection's, as a new user would bring: customers with emails,
phones and addresses (one email in a column too short for any masked email), a uuid-keyed table,
a partitioned table, a view and a trigger."""

from __future__ import annotations

SHOP_SCHEMA = (
    """CREATE TABLE customers (
        id bigserial PRIMARY KEY,
        email varchar(255) NOT NULL UNIQUE,
        phone text,
        first_name text NOT NULL,
        last_name text NOT NULL,
        street_address text,
        city text,
        postcode varchar(10),
        login_email varchar(40) NOT NULL,
        backup_email varchar(30),
        updated_at timestamptz NOT NULL DEFAULT now())""",
    "CREATE TABLE products (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), title text NOT NULL,"
    " price numeric(10, 2) NOT NULL)",
    """CREATE TABLE orders (
        id bigint GENERATED ALWAYS AS IDENTITY,
        customer_id bigint NOT NULL REFERENCES customers,
        product_id uuid REFERENCES products,
        placed_on date NOT NULL,
        ip inet,
        PRIMARY KEY (id, placed_on)) PARTITION BY RANGE (placed_on)""",
    "CREATE TABLE orders_2024 PARTITION OF orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
    "CREATE TABLE orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
    "CREATE VIEW customer_orders AS SELECT c.email, count(o.id) AS orders FROM customers c"
    " LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.email",
    "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$",
    "CREATE TRIGGER customers_touch BEFORE UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION touch()",
)

SHOP_ROWS = (
    "INSERT INTO customers (email, phone, first_name, last_name, street_address, city, postcode, login_email)"
    " SELECT 'c' || g || '@shop.test', '+1 555 01' || lpad(g::text, 2, '0'), 'First' || g, 'Last' || g,"
    " g || ' Main Street', 'Springfield', 'SP' || g, 'c' || g || '@shop.test' FROM generate_series(1, 40) g",
    "INSERT INTO products (title, price) SELECT 'Product ' || g, g * 1.5 FROM generate_series(1, 5) g",
    "INSERT INTO orders (customer_id, product_id, placed_on, ip) SELECT 1 + g % 40,"
    " (SELECT id FROM products ORDER BY title LIMIT 1), date '2024-06-01' + g, ('192.0.2.' || (g % 250))::inet"
    " FROM generate_series(1, 400) g",
    "ANALYZE",
)
