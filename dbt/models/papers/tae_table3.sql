{#- Tae et al. Table 3: valence -- Pearson r and MAE of the model against the mean human
    rating per image, the model's mean (SD) and the humans' mean (SD) over images. -#}
{{ tae_dimension_summary('tae_table3', 'valence') }}
