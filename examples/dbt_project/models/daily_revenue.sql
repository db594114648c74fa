-- Revenue per country for the day: one row per (day, country).
{{ config(materialized='incremental', unique_key='day', incremental_strategy='delete+insert') }}

select day, country, count(*) as orders, sum(amount) as revenue
from {{ ref('stg_orders') }}
where day = cast('{{ var("partition") }}' as date)
group by day, country
