{#- Share of images per demographic group for which a VLM request never got a model answer
    (raw.transport_failures), per failure kind and for any kind ('any'). These images are not
    answers and are absent from the accuracy marts' denominators; this mart says how many and
    for whom. One row per prompted model slice (every slice with a prompt hash or a failure),
    group and kind -- zero rates included, so a group without failures shows rate 0. -#}

with

failures as (

    select * from {{ ref('stg_transport_failures') }}
    {{ slice_filter('where') }}

),

predictions as (

    select * from {{ ref('stg_predictions') }}
    {{ slice_filter('where') }}

),

images as (

    select * from {{ ref('int_images_labeled') }}

),

slices as (

    select distinct model, model_version, dataset, protocol
    from predictions
    where prompt_hash is not null

    union

    select distinct model, model_version, dataset, protocol
    from failures

),

slice_kinds as (

    select model, model_version, dataset, protocol, 'any' as failure_kind
    from slices

    union

    select distinct model, model_version, dataset, protocol, failure_kind
    from failures

),

image_groups as (

    select dataset, image_id, grouping, group_value
    from ({{ unpivot_groupings('images') }})

),

group_sizes as (

    select dataset, grouping, group_value, count(*) as n_images
    from image_groups
    group by dataset, grouping, group_value

),

failed_images as (

    select distinct model, model_version, dataset, protocol, image_id, failure_kind
    from failures

    union

    select distinct model, model_version, dataset, protocol, image_id, 'any' as failure_kind
    from failures

),

failed_counts as (

    select
        failed_images.model,
        failed_images.model_version,
        failed_images.dataset,
        failed_images.protocol,
        image_groups.grouping,
        image_groups.group_value,
        failed_images.failure_kind,
        count(*) as n_images_failed

    from failed_images

    inner join image_groups
        on image_groups.dataset = failed_images.dataset
        and image_groups.image_id = failed_images.image_id

    group by all

),

final as (

    select
        slice_kinds.model,
        slice_kinds.model_version,
        slice_kinds.dataset,
        slice_kinds.protocol,
        group_sizes.grouping,
        group_sizes.group_value,
        slice_kinds.failure_kind as kind,
        cast(coalesce(failed_counts.n_images_failed, 0) as bigint) as n_images_failed,
        cast(group_sizes.n_images as bigint) as n_images,
        cast(coalesce(failed_counts.n_images_failed, 0) as double) / group_sizes.n_images as rate

    from slice_kinds

    inner join group_sizes
        on group_sizes.dataset = slice_kinds.dataset

    left join failed_counts
        on failed_counts.model = slice_kinds.model
        and failed_counts.model_version = slice_kinds.model_version
        and failed_counts.dataset = slice_kinds.dataset
        and failed_counts.protocol = slice_kinds.protocol
        and failed_counts.grouping = group_sizes.grouping
        and failed_counts.group_value = group_sizes.group_value
        and failed_counts.failure_kind = slice_kinds.failure_kind

)

select * from final
