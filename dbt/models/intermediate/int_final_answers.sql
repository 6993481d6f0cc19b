{#- One final emotion answer per (model, model_version, dataset, protocol, image_id).
    Per sample the last try counts (highest step among the protocol's 'emotion' steps, then
    highest attempt); across maj@k samples the mode of the valid canonical emotions wins.
    A tie for the mode follows var('tie_policy') (statistics.tie_policy): 'status' (default)
    gives answer_status 'tie' and no predicted emotion (not an answer; an error in
    intent-to-treat accuracy); 'random' keeps the tied emotion with the smallest
    md5(tie_seed/slice/image/emotion), a reproducible random choice. is_tie flags both. -#}

{%- set tie_policy = var('tie_policy', 'status') -%}
{%- if tie_policy not in ('status', 'random') -%}
    {{ exceptions.raise_compiler_error("var('tie_policy') must be 'status' or 'random', got '" ~ tie_policy ~ "'") }}
{%- endif -%}
{%- set tie_seed = var('tie_seed', 0) | int %}

with

predictions as (

    select * from {{ ref('int_predictions') }}
    where step_name = 'emotion'
    {{ slice_filter('and') }}

),

emotion_label_map as (

    select * from {{ ref('emotion_label_map') }}

),

last_tries as (

    -- a sample's last try: the highest step, then the highest attempt ((step, sample_index,
    -- attempt) is unique: raw.predictions' key). One aggregate per sample, not a window over
    -- every answer: the window was the slowest part of a many-slice build.
    select
        model,
        model_version,
        dataset,
        protocol,
        image_id,
        sample_index,
        arg_max(
            {'model_kind': model_kind, 'label_set': label_set, 'parse_status': parse_status,
             'predicted_label': predicted_label},
            {'step': step, 'attempt': attempt}
        ) as last_try

    from predictions

    group by model, model_version, dataset, protocol, image_id, sample_index

),

answered_labels as (

    -- each distinct answer once through the label map: a few dozen labels, where keying the
    -- join per answer (trim and lower-case 10^7 strings) was most of a many-slice build
    select distinct
        last_try.label_set as label_set,
        last_try.predicted_label as predicted_label

    from last_tries

),

label_emotions as (

    select
        answered_labels.label_set,
        answered_labels.predicted_label,
        emotion_label_map.emotion

    from answered_labels

    inner join emotion_label_map
        on emotion_label_map.label_set = answered_labels.label_set
        and {{ label_key('emotion_label_map.source_label') }} = {{ label_key('answered_labels.predicted_label') }}

),

samples as (

    select
        last_tries.model,
        last_tries.model_version,
        last_tries.last_try.model_kind as model_kind,
        last_tries.last_try.label_set as label_set,
        last_tries.dataset,
        last_tries.protocol,
        last_tries.image_id,
        last_tries.sample_index,
        last_tries.last_try.parse_status as parse_status,
        case
            when last_tries.last_try.parse_status in ('ok', 'repaired')
                then label_emotions.emotion
        end as sample_emotion

    from last_tries

    left join label_emotions
        on label_emotions.label_set = last_tries.last_try.label_set
        and label_emotions.predicted_label = last_tries.last_try.predicted_label

),

votes as (

    -- the samples of an image per canonical emotion (null: no valid emotion), with the
    -- attributes of the group's last sample; an image's votes are a handful of rows
    select
        model,
        model_version,
        dataset,
        protocol,
        image_id,
        sample_emotion,
        count(*) as n_votes,
        max(sample_index) as last_sample_index,
        arg_max({'model_kind': model_kind, 'label_set': label_set, 'parse_status': parse_status}, sample_index)
            as last_sample

    from samples

    group by model, model_version, dataset, protocol, image_id, sample_emotion

),

per_image as (

    select
        model,
        model_version,
        dataset,
        protocol,
        image_id,
        arg_max(last_sample, last_sample_index) as last_sample,
        cast(sum(n_votes) as bigint) as n_samples,
        cast(coalesce(sum(n_votes) filter (where sample_emotion is not null), 0) as bigint) as n_valid,
        -- the two largest vote counts, largest first: equal means a tie for the mode
        max(n_votes, 2) filter (where sample_emotion is not null) as top_votes,
        {%- if tie_policy == 'status' %}
        -- (a tie gets no emotion below, so the unique mode is the only winner that counts)
        arg_max(sample_emotion, n_votes) filter (where sample_emotion is not null) as mode_emotion
        {%- else %}
        arg_min(
            sample_emotion,
            {'fewer_votes': -n_votes,
             'draw': md5(concat_ws('/', '{{ tie_seed }}', model, model_version, dataset, protocol, image_id,
                                   sample_emotion))}
        ) filter (where sample_emotion is not null) as mode_emotion
        {%- endif %}

    from votes

    group by model, model_version, dataset, protocol, image_id

),

winners as (

    select
        *,
        coalesce(len(top_votes) > 1 and top_votes[1] = top_votes[2], false) as is_tie

    from per_image

),

final as (

    select
        model,
        model_version,
        last_sample.model_kind as model_kind,
        last_sample.label_set as label_set,
        dataset,
        protocol,
        image_id,
        {%- if tie_policy == 'status' %}
        case when not is_tie then mode_emotion end as predicted_emotion,
        {%- else %}
        mode_emotion as predicted_emotion,
        {%- endif %}
        coalesce(top_votes[1], 0) as n_votes,
        is_tie,
        n_samples,
        n_valid,
        case
            {%- if tie_policy == 'status' %}
            when is_tie then 'tie'
            {%- endif %}
            when mode_emotion is not null then 'answered'
            when last_sample.parse_status in ('ok', 'repaired') then 'unmapped_label'
            else last_sample.parse_status
        end as answer_status

    from winners

)

select * from final
