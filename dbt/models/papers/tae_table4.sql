{#- Tae et al. Table 4: per-emotion valence bias, mean(model - human mean) over the emotion's
    images (stats.dimensional_agreement bland_altman_bias, with its t-interval and t-test). -#}

with

{{ tae_bias_cells('valence') }},

{{ compare_with_published('tae_table4', 'cells',
       {'dimension': 'dimension', 'subset_kind': 'subset_kind', 'subset': 'subset', 'measure': 'measure'}) }},

final as (

    select * from compared

)

select * from final
