"""benchmarks/bench_real_models.py: its command-line parsing of per-run learning rates and field overrides
(the benchmark itself needs the real models: run it by hand, results in benchmarks/RESULTS_real_models.md)."""

import pytest

from tests.benchmarks.test_bench_gpu import load_benchmark


def test_learning_rates_and_overrides_parse_typed_values():
    bench = load_benchmark("bench_real_models")
    assert bench.learning_rates("2e-5,dr=5e-4, mcl=1e-4") == (2e-5, {"dr": 5e-4, "mcl": 1e-4})
    assert bench.learning_rates("dr=1e-3") == (2e-4, {"dr": 1e-3})
    got = bench.overrides(["queue_size=512", "contrastive_temperature = 0.1", "include_positive=false",
                           "projection_init=least_squares"])
    assert got == {"queue_size": 512, "contrastive_temperature": 0.1, "include_positive": False,
                   "projection_init": "least_squares"}
    assert isinstance(got["queue_size"], int)
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        bench.overrides(["queue_size"])


def test_overrides_reach_the_training_arguments():
    """Every override is a real DistillationArguments field with the value's type (a typo fails loudly)."""
    from mvld_hf import DistillationArguments

    bench = load_benchmark("bench_real_models")
    args = DistillationArguments(output_dir="out", method="dr", report_to="none", per_device_train_batch_size=8,
                                 **bench.overrides(["queue_size=64", "student_temperature=0.1"]))
    assert (args.queue_size, args.student_temperature) == (64, 0.1)
    with pytest.raises(TypeError):
        DistillationArguments(output_dir="out", report_to="none", **bench.overrides(["queue_sise=64"]))


PO_DE = r'''# German catalog (header, a fuzzy entry, a plural, a context, a multi-line string, an obsolete entry)
msgid ""
msgstr ""
"Language: de\n"

msgid "Enter a valid email address."
msgstr "Bitte gültige E-Mail-Adresse eingeben."

#, fuzzy
msgid "This field is required here."
msgstr "Dieses Feld ist zwingend erforderlich."

msgctxt "abbrev. month"
msgid "Jan."
msgstr "Jan."

msgid "Ensure this value has at most %(limit_value)d character."
msgid_plural "Ensure this value has at most %(limit_value)d characters."
msgstr[0] "Dieser Wert darf höchstens %(limit_value)d Zeichen haben."
msgstr[1] "Dieser Wert darf höchstens %(limit_value)d Zeichen haben."

msgid ""
"The password is too similar "
"to the \"username\"."
msgstr ""
"Das Passwort ist dem „Benutzernamen“ "
"zu ähnlich."

msgid "Not translated yet, but long enough."
msgstr ""

msgid "%(class_name)s %(instance)s"
msgstr "%(class_name)s %(instance)s"

#~ msgid "An obsolete sentence of several words."
#~ msgstr "Ein veralteter Satz aus mehreren Wörtern."
'''


def test_parse_po_reads_entries_and_skips_header_fuzzy_and_obsolete():
    bench = load_benchmark("bench_real_models")
    entries = bench.parse_po(PO_DE)
    ids = [e["msgid"] for e in entries]
    assert ids == ["Enter a valid email address.", "Jan.",
                   "Ensure this value has at most %(limit_value)d character.",
                   'The password is too similar to the "username".', "Not translated yet, but long enough.",
                   "%(class_name)s %(instance)s"]
    assert entries[1]["msgctxt"] == "abbrev. month"
    assert entries[2]["msgstr[0]"].startswith("Dieser Wert") and "msgid_plural" in entries[2]
    assert entries[3]["msgstr"] == "Das Passwort ist dem „Benutzernamen“ zu ähnlich."


def test_catalog_pairs_keep_translated_sentences_of_several_words():
    bench = load_benchmark("bench_real_models")
    pairs = bench.catalog_pairs([PO_DE], min_words=3)
    assert list(pairs) == ["Enter a valid email address.",
                           "Ensure this value has at most %(limit_value)d character.",
                           'The password is too similar to the "username".']
    assert bench.word_count("%(class_name)s %(instance)s") == 0  # placeholders are not words
    assert "Jan." in bench.catalog_pairs([PO_DE], min_words=1)


def test_catalogs_of_several_packages_are_read_together(tmp_path, monkeypatch):
    """``--catalog-package django,weblate``: both packages' .po files feed each language; a msgid both translate
    keeps the first package's translation."""
    bench = load_benchmark("bench_real_models")

    def po(entries):
        return "".join(f'msgid "{en}"\nmsgstr "{tr}"\n\n' for en, tr in entries)

    files = {}
    for package, entries in {"first": [("Enter a valid date.", "Erstes Datum.")],
                             "second": [("Enter a valid date.", "Zweites Datum."),
                                        ("The file could not be saved.", "Nicht gespeichert.")]}.items():
        path = tmp_path / package / "locale" / "de" / "LC_MESSAGES" / "django.po"
        path.parent.mkdir(parents=True)
        path.write_text(po(entries), encoding="utf-8")
        files[package] = [str(path)]
    monkeypatch.setattr(bench, "catalog_files", lambda package, language: files[package])
    args = bench.parse_args(["--data", "django", "--catalog-package", "first, second", "--test-fraction", "0",
                             "--steps", "10", "--batch-size", "4"])
    languages, train, test = bench.load_catalog_data(args, ["de"])
    got = {row["english"]: row["caption"] for row in train}
    assert got == {"Enter a valid date.": "Erstes Datum.", "The file could not be saved.": "Nicht gespeichert."}
    assert languages == ["de"] and len(test) == 0


def test_parallel_corpus_holds_out_sources_shared_by_every_language():
    bench = load_benchmark("bench_real_models")
    shared = {f"shared sentence number {i}": i for i in range(10)}
    pairs = {"de": {**{k: f"de {v}" for k, v in shared.items()}, "only in german here": "nur deutsch"},
             "ja": {k: f"ja {v}" for k, v in shared.items()}}
    train, test = bench.build_parallel_corpus(pairs, test_fraction=0.3, seed=0)
    held_out = {r["english"] for r in test}
    assert len(held_out) == 3 and held_out <= set(shared)
    assert sorted(r["language"] for r in test) == ["de"] * 3 + ["ja"] * 3  # every language, same sources
    assert not held_out & {r["english"] for r in train}  # never trained on, in any language
    assert len(train) == 2 * 7 + 1 and {"caption", "english", "language"} == set(train[0])
    again, _ = bench.build_parallel_corpus(pairs, test_fraction=0.3, seed=0)
    assert again == train


def test_seeds_are_summarised_as_mean_and_std_per_language():
    bench = load_benchmark("bench_real_models")

    def table(acc):
        return {"de": {"s2t_acc": acc, "t2s_acc": acc, "cosine": 0.5, "spread": 0.2, "teacher_spread": 0.1},
                "mean": {"s2t_acc": acc, "t2s_acc": acc, "cosine": 0.5, "spread": 0.2, "teacher_spread": 0.1}}

    run = bench.summarize(5e-5, {0: {"train_seconds": 10, "table": table(0.8)},
                                 1: {"train_seconds": 20, "table": table(0.9)}})
    assert abs(run["table"]["de"]["s2t_acc"] - 0.85) < 1e-12 and abs(run["std"]["mean"]["s2t_acc"] - 0.0707) < 1e-4
    assert run["train_seconds"] == 15 and set(run["seeds"]) == {0, 1}
    text = bench.format_markdown({"runs": {"dr": run}}, ["de"])
    assert "| dr | 5e-05 | 0.850 ± 0.071 |" in text


def test_gradient_cosines_compare_each_term_with_dr(tokenizer):
    """The ``gradcos`` diagnostic on a tiny student: one cosine per term, averaged over the batches; FD's MSE
    gradient has a radial part that DR's (a function of cosines only) never has."""
    import argparse

    import datasets
    import torch

    from mvld_hf.testing import tiny_student

    bench = load_benchmark("bench_real_models")
    torch.manual_seed(0)
    rows = {"caption": [f"caption number {i}" for i in range(12)],
            "teacher_text_embeds": torch.randn(12, 8).tolist()}
    got = bench.gradient_cosines(tiny_student(tokenizer, projection_dim=8), tokenizer, datasets.Dataset.from_dict(rows),
                                 argparse.Namespace(batch_size=4, max_length=16), batches=3)
    assert set(got) == {"fd", "geometry", "drb_reverse", "sd", "mcl"}
    assert all(-1.0 <= v <= 1.0 for v in got.values())
    s = torch.randn(4, 8)
    g = bench.embedding_gradient(lambda s, a, q: (s * a).sum(), s, torch.ones(4, 8), None)
    assert torch.equal(g, torch.ones(32))


def test_merge_gathers_seeds_of_a_run_from_several_files_and_names_override_runs():
    bench = load_benchmark("bench_real_models")

    def part(run, seed, acc, overrides=None, steps=10):
        table = {g: {"s2t_acc": acc, "t2s_acc": acc, "cosine": 0.5, "spread": 0.2, "teacher_spread": 0.1}
                 for g in ("de", "mean")}
        meta = {"command": f"--runs {run} --seeds {seed}", "data": "django", "teacher": "t", "train_rows": 64,
                "eval_rows": {"de": 10}, "steps": steps, "batch_size": 8, "overrides": overrides or {}}
        return {"meta": meta, "runs": {run: bench.summarize(5e-5, {seed: {"train_seconds": 1, "table": table}})}}

    merged = bench.merge_results([part("dr", 0, 0.8), part("dr", 1, 0.9), part("fd", 0, 0.7),
                                  part("dr", 0, 0.6, {"train_sampling_strategy": "group_by_length"})])
    assert list(merged["runs"]) == ["dr", "fd", "dr[train_sampling_strategy=group_by_length]"]
    assert abs(merged["runs"]["dr"]["table"]["mean"]["s2t_acc"] - 0.85) < 1e-12
    assert set(merged["runs"]["dr"]["seeds"]) == {"0", "1"} and len(merged["meta"]["commands"]) == 4
    assert "| dr | 5e-05 | 0.850 ± 0.071 |" in bench.format_markdown(merged, ["de"])
    with pytest.raises(SystemExit, match="seed 0 is in two files"):
        bench.merge_results([part("dr", 0, 0.8), part("dr", 0, 0.9)])
    with pytest.raises(SystemExit, match=r"differs from the first file in \['steps'\]"):
        bench.merge_results([part("dr", 0, 0.8), part("dr", 1, 0.9, steps=20)])
