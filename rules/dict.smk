# Build the experiment's joint fairseq dictionary from its tokenized training text.


rule dict:
    input:
        text=get_train_text,
        tokenizer=rules.tokenizer.output.model,
    output:
        "results/{corpus}/{exp}/dict.txt",
    log:
        "results/{corpus}/{exp}/logs/dict.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/dict.tsv"
    conda:
        "../workflow/envs/pasero.yaml"
    threads: 4
    params:
        options=get_options("dict"),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
    shell:
        "pasero-build-dict -i {input.text} --tokenizer {params.tokenizer} -o {output} {params.options}"
        " --workers {threads} > {log} 2>&1"
