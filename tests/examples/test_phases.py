"""The phase estimates follow the run's size and what the cache holds; the recorded phases make a table."""

import json

from mvld_hf.cli.phases import PhaseClock, _teacher_cached, offline_estimates, phase_table

DEMO = dict(seed=0, train_scenes=3000, test_scenes=600, languages=13, teacher_steps=500, max_steps=1500,
            global_batch=128, max_train_samples=None, evaluate=True)


def test_estimates_shrink_with_what_the_cache_holds_and_scale_with_the_run():
    fresh = offline_estimates(**DEMO, world_cached=False, teacher_cached=False)
    cached = offline_estimates(**DEMO, world_cached=True, teacher_cached=True, teacher_eval_cached=True)
    assert cached["world"] < fresh["world"] and cached["teacher"] < fresh["teacher"] / 10
    assert cached["evaluation"] < fresh["evaluation"] and cached["training"] == fresh["training"]
    quick = offline_estimates(**{**DEMO, "max_steps": 200}, world_cached=True, teacher_cached=True)
    assert abs(quick["training"] / cached["training"] - 200 / 1500) < 0.01
    assert offline_estimates(**{**DEMO, "evaluate": False}, world_cached=True, teacher_cached=True)["evaluation"] == 0


def test_a_cached_teacher_is_found_by_its_recipe(tmp_path):
    folder = tmp_path / "teacher-v3-abc"
    folder.mkdir()
    (folder / "teacher_info.json").write_text(json.dumps({"hparams": {"seed": 0, "steps": 500},
                                                          "train_images": 3000}))
    assert _teacher_cached(str(tmp_path), seed=0, steps=500, train_scenes=3000)
    assert not _teacher_cached(str(tmp_path), seed=1, steps=500, train_scenes=3000)
    assert not _teacher_cached(str(tmp_path), seed=0, steps=100, train_scenes=3000)


def test_phases_are_timed_printed_recorded_and_tabulated():
    printed = []
    clock = PhaseClock({"world": 2.0, "training": 100.0}, {"world": "cached"},
                       printer=lambda line, **_: printed.append(line))
    clock.announce("demo")
    with clock.phase("world"):
        pass
    with clock.phase("training"):
        pass
    assert printed[0].startswith("demo: 2 phases, about 1.7 min on a quiet 2-core CPU")
    assert "  world       ~2 s  (cached)" in printed and printed[-1].startswith("[phase] training: 0 s (estimated")
    record = clock.record()
    assert list(record["phase_seconds"]) == ["world", "training"] and record["phase_estimates"]["training"] == 100.0
    table = phase_table(record)
    assert "| world | ~2 s | 0 s |" in table and table.splitlines()[-1].startswith("| **total** | ~1.7 min")
