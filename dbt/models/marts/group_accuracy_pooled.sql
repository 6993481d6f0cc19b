{#- group_accuracy of each configured dataset group (benchmark.yaml `dataset_groups:`; Chhua
    et al. pool RADIATE and Tarr): the members' answers counted together, with dataset = the
    group's name. The same columns as group_accuracy (macros/group_accuracy.sql), plus
    is_pooled, the member datasets that answered (pooled_datasets: a model version evaluated on
    only some members pools only those) and is_complete (every configured member is in). It
    spans slices, so it is a view built after them (tag across_slices). -#}

with

members as (

    {{ dataset_group_members() }}

),

member_answers as (

    select
        answers.*,
        members.dataset_group

    from {{ ref('int_answers_with_groups') }} as answers

    inner join members
        on members.dataset = answers.dataset

),

answers as (

    select * exclude (dataset, dataset_group), dataset_group as dataset
    from member_answers

),

pools as (

    select
        model,
        model_version,
        dataset_group as dataset,
        protocol,
        list_sort(list(distinct dataset)) as pooled_datasets

    from member_answers

    group by model, model_version, dataset_group, protocol

),

group_sizes as (

    select dataset_group as dataset, count(*) as n_members
    from members
    group by dataset_group

),

{{ group_accuracy_ctes('answers') }},

pooled as (

    select
        final.*,
        true as is_pooled,
        pools.pooled_datasets,
        len(pools.pooled_datasets) = group_sizes.n_members as is_complete

    from final

    inner join pools
        on pools.model = final.model
        and pools.model_version = final.model_version
        and pools.dataset = final.dataset
        and pools.protocol = final.protocol

    inner join group_sizes
        on group_sizes.dataset = final.dataset

)

select * from pooled
