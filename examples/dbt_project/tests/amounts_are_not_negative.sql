-- A refund is its own record upstream: a negative amount in an order is a broken export.
select order_id, amount
from {{ ref('stg_orders') }}
where amount < 0
