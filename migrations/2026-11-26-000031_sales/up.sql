-- Sales reports: answered from per-scope, per-day rollups, never by scanning orders.
--
-- A payment or a successful refund appends ONE row to sales_pending inside its own
-- transaction (a plain insert: nothing shared is locked, so payments never queue on a hot
-- rollup row). A folder (every instance, one at a time) moves pending rows into
-- sales_rollup in one transaction. A report reads its rollup rows together with the pending
-- rows of its scope in one statement (one snapshot), so it is exact at every moment: the
-- folding delay moves work, it never hides a sale.

-- One row per paid order (orders = 1, amount) or successful refund (refunded), dated by
-- when it happened (the payment's, the refund's time).
CREATE TABLE sales_pending (
    id BIGSERIAL PRIMARY KEY,
    order_id BIGINT NOT NULL REFERENCES orders (id),
    refund_id BIGINT REFERENCES refunds (id),
    at TIMESTAMPTZ NOT NULL,
    orders INT NOT NULL CHECK (orders IN (0, 1)),
    amount BIGINT NOT NULL CHECK (amount >= 0),
    refunded BIGINT NOT NULL CHECK (refunded >= 0)
);

-- Totals of a scope (ALL: everything, scope_id 0; AGENT: orders whose agent path runs
-- through scope_id; SALES: orders of the sales user scope_id) on a day (in the report time
-- zone), per key of a dimension:
--   ITEM        kind|channel|product id (DAY, WEEK, MONTH, KIND, CHANNEL, PRODUCT reports)
--   AGENT       the next agent below the scope on the order's path (the scope agent itself
--               for its own orders; for ALL the top-level agent; NONE without an agent)
--   SALES_USER  the order's sales user id, or NONE
CREATE TABLE sales_rollup (
    scope TEXT NOT NULL CHECK (scope IN ('ALL', 'AGENT', 'SALES')),
    scope_id BIGINT NOT NULL,
    dim TEXT NOT NULL CHECK (dim IN ('ITEM', 'AGENT', 'SALES_USER')),
    day DATE NOT NULL,
    key TEXT NOT NULL,
    orders BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    refunded BIGINT NOT NULL,
    PRIMARY KEY (scope, scope_id, dim, day, key)
);

-- The rollup rows a pending row stands for (the day still as a time: the zone is a
-- setting). The one spelling of how an order is counted, used by the folder and by reports.
-- Each pending row looks up its own order (LATERAL ... OFFSET 0 keeps it a lookup by
-- primary key): the cost follows the pending rows, never the orders table, whatever the
-- statistics of a table that is filled and emptied all day say.
CREATE VIEW sales_pending_rows AS
WITH facts AS (
    SELECT p.id AS pending_id, p.at, p.orders, p.amount, p.refunded,
           o.agent_path AS path, o.sales_user_id,
           o.kind || '|' || coalesce(o.channel, 'BALANCE') || '|' || coalesce(o.product_id::text, '') AS item
      FROM sales_pending p
     CROSS JOIN LATERAL (SELECT agent_path, sales_user_id, kind, channel, product_id
                           FROM orders WHERE orders.id = p.order_id OFFSET 0) o
), scoped AS (
    SELECT f.*, 'ALL'::text AS scope, 0::bigint AS scope_id,
           coalesce(f.path[1]::text, 'NONE') AS agent_key
      FROM facts f
    UNION ALL
    SELECT f.*, 'AGENT', a.id, coalesce(f.path[a.n + 1], a.id)::text
      FROM facts f, unnest(f.path) WITH ORDINALITY AS a (id, n)
    UNION ALL
    SELECT f.*, 'SALES', f.sales_user_id,
           coalesce(f.path[cardinality(f.path)]::text, 'NONE')
      FROM facts f WHERE f.sales_user_id IS NOT NULL
)
SELECT pending_id, at, scope, scope_id, 'ITEM'::text AS dim, item AS key, orders, amount, refunded
  FROM scoped
UNION ALL
SELECT pending_id, at, scope, scope_id, 'AGENT', agent_key, orders, amount, refunded FROM scoped
UNION ALL
SELECT pending_id, at, scope, scope_id, 'SALES_USER', coalesce(sales_user_id::text, 'NONE'),
       orders, amount, refunded
  FROM scoped;
