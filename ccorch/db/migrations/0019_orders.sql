-- Orders of the company's own products taken on the phone (seed 004: a bottled-water
-- company): products with price and stock, an order's items at the price of the day,
-- delivery address, day and slot, and every change of its state.
CREATE TABLE products (
    id          bigserial PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    unit        text NOT NULL DEFAULT 'pcs',
    price       numeric(12, 2) NOT NULL CHECK (price >= 0),
    currency    text NOT NULL DEFAULT 'UAH',
    stock       integer NOT NULL DEFAULT 0 CHECK (stock >= 0),
    active      boolean NOT NULL DEFAULT true
);

CREATE TABLE orders (
    id              bigserial PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers(id),
    status          text NOT NULL DEFAULT 'new'
                    CHECK (status IN ('new', 'confirmed', 'delivered', 'returned', 'cancelled')),
    address         text NOT NULL,
    delivery_date   date NOT NULL,
    delivery_slot   text NOT NULL,
    total           numeric(12, 2) NOT NULL,
    currency        text NOT NULL,
    note            text NOT NULL DEFAULT '',
    created_by      bigint REFERENCES users(id),
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer ON orders (customer_id, created_at DESC);

CREATE TABLE order_items (
    order_id    bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    product_id  bigint NOT NULL REFERENCES products(id),
    quantity    integer NOT NULL CHECK (quantity > 0),
    price       numeric(12, 2) NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE order_events (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    status      text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    user_id     bigint REFERENCES users(id),
    comment     text NOT NULL DEFAULT ''
);
CREATE INDEX order_events_order ON order_events (order_id, at);
