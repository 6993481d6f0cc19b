with

answers as (

    select * from {{ ref('int_answers_with_groups') }}
    {{ slice_filter('where') }}

),

{{ group_accuracy_ctes('answers') }}

select * from final
