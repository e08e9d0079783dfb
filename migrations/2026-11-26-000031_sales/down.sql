DROP VIEW sales_pending_rows;
DROP TABLE sales_rollup;
DROP TABLE sales_pending;
