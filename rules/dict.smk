# Build the experiment's joint fairseq dictionary from its tokenized training text.


rule dict:
    input:
        text=train_text,
        tokenizer="results/{corpus}/{exp}/tokenizer/spm.model",
    output:
        "results/{corpus}/{exp}/dict.txt",
    params:
        options=lambda w: options(exp(w)["dict"]),
        tokenizer=lambda w, input: os.path.dirname(input.tokenizer),
    log:
        "results/{corpus}/{exp}/logs/dict.log",
    benchmark:
        "results/{corpus}/{exp}/benchmarks/dict.tsv"
    threads: 4
    conda:
        "../workflow/envs/pasero.yaml"
    shell:
        "pasero-build-dict -i {input.text} --tokenizer {params.tokenizer} -o {output} {params.options}"
        " --workers {threads} > {log} 2>&1"
