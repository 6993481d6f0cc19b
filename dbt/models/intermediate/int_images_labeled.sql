with

images as (

    select * from {{ ref('stg_dataset_images') }}

),

emotion_label_map as (

    select * from {{ ref('emotion_label_map') }}

),

race_map as (

    select * from {{ ref('race_map') }}

),

gender_map as (

    select * from {{ ref('gender_map') }}

),

cleaned as (

    select
        *,
        nullif({{ label_key('source_race') }}, '') as race_key,
        nullif({{ label_key('source_gender') }}, '') as gender_key

    from images

),

labeled as (

    select
        cleaned.dataset,
        cleaned.image_id,
        cleaned.image_hash,
        cleaned.label_set,
        cleaned.source_label,
        emotion_label_map.emotion as true_emotion,
        cleaned.identity,
        cleaned.source_race,
        -- the dataset's own label_set first, then the generic 'canonical' spellings,
        -- then the value itself (its label_key); null stays null
        coalesce(race_own.race, race_canonical.race, cleaned.race_key) as race,
        cleaned.source_gender,
        coalesce(gender_own.gender, gender_canonical.gender, cleaned.gender_key) as gender,
        cleaned.age,
        cleaned.extra,
        cleaned.width,
        cleaned.height

    from cleaned

    left join emotion_label_map
        on emotion_label_map.label_set = cleaned.label_set
        and {{ label_key('emotion_label_map.source_label') }} = {{ label_key('cleaned.source_label') }}

    left join race_map as race_own
        on race_own.label_set = cleaned.label_set
        and {{ label_key('race_own.source_race') }} = cleaned.race_key

    left join race_map as race_canonical
        on race_canonical.label_set = 'canonical'
        and {{ label_key('race_canonical.source_race') }} = cleaned.race_key

    left join gender_map as gender_own
        on gender_own.label_set = cleaned.label_set
        and {{ label_key('gender_own.source_gender') }} = cleaned.gender_key

    left join gender_map as gender_canonical
        on gender_canonical.label_set = 'canonical'
        and {{ label_key('gender_canonical.source_gender') }} = cleaned.gender_key

)

select * from labeled
