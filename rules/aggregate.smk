# Results tables of every experiment and the learning curves shown by `snakemake --report`.


rule aggregate:
    input:
        [f"results/{corpus}/{name}/scores.json" for corpus, name in experiments()],
    output:
        tsv=report(
            "results/summary.tsv",
            caption="../workflow/report/summary.rst",
            category="Results",
            labels={"table": "summary"},
        ),
        md="results/summary.md",
    log:
        "results/logs/aggregate.log",
    benchmark:
        "results/benchmarks/aggregate.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    shell:
        "pasero-aggregate {input} -o {output.tsv} --markdown {output.md} > {log} 2>&1"


rule learning_curve:
    input:
        rules.train.output[0],
    output:
        report(
            "results/{corpus}/{exp}/learning_curve.svg",
            caption="../workflow/report/learning_curve.rst",
            category="Learning curves",
            subcategory="{corpus}",
            labels={"experiment": "{corpus}/{exp}"},
        ),
    log:
        "results/{corpus}/{exp}/logs/learning_curve.log",
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        metrics="results/{corpus}/{exp}/train/train.jsonl",
        title="{corpus}/{exp}",
    script:
        "../workflow/report/learning_curve.py"


rule directions_chart:
    input:
        rules.combine_directions.output.json,
    output:
        report(
            "results/{corpus}/{exp}/directions.svg",
            caption="../workflow/report/directions_chart.rst",
            category="Multilingual",
            subcategory="{corpus}",
            labels={"experiment": "{corpus}/{exp}"},
        ),
    log:
        "results/{corpus}/{exp}/logs/directions_chart.log",
    wildcard_constraints:
        exp=MULTILINGUAL_EXP,
    conda:
        "../workflow/envs/pasero.yaml"
    params:
        title="{corpus}/{exp}",
    script:
        "../workflow/report/directions_chart.py"
