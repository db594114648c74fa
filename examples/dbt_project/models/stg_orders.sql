-- The day's orders as the upstream task exported them, typed and stamped with the day.
{{ config(materialized='incremental', unique_key='day', incremental_strategy='delete+insert') }}

select
    order_id,
    lower(country) as country,
    cast(amount as decimal(12, 2)) as amount,
    cast('{{ var("partition") }}' as date) as day
from read_csv('{{ var("orders_csv") }}', header = true, all_varchar = true)
