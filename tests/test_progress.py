import apache_beam as beam

import time

from hyperscene.transforms.progress import Progress, report_of_totals, stage_report, stage_timer, take_process_totals


def test_stage_timings_reach_the_launcher_through_beam_metrics():
    def work(batch):
        with stage_timer("square", len(batch)):
            out = [x * x for x in batch]
        return out

    p = beam.Pipeline()
    _ = p | beam.Create([[1, 2, 3], [4, 5]]) | beam.FlatMap(work)
    result = p.run()
    result.wait_until_finish()
    report = stage_report(result)
    assert report["square"]["items"] == 5
    assert report["square"]["seconds"] >= 0 and report["square"]["peak_rss_mb"] > 0


def test_progress_outside_a_pipeline_counts_and_does_not_fail():
    progress = Progress("decompress", "documents", interval=0)
    with progress.timed(3):
        pass
    assert progress.count == 3


def test_short_pieces_of_work_add_up_instead_of_rounding_to_nothing():
    def work(x):
        with stage_timer("tiny", 1):
            deadline = time.perf_counter() + 0.0004
            while time.perf_counter() < deadline:
                pass
        return x

    p = beam.Pipeline()
    _ = p | beam.Create(range(50)) | beam.Map(work)
    result = p.run()
    result.wait_until_finish()
    assert stage_report(result)["tiny"]["seconds"] >= 0.015  # 50 x 0.4 ms, each under a millisecond


def test_process_totals_make_the_same_report_where_a_runner_has_no_metrics():
    take_process_totals()
    with stage_timer("square", 3):
        pass
    with stage_timer("square", 2):
        pass
    worker_a, worker_b = take_process_totals(), {"square": [500_000, 4, 10]}
    report = report_of_totals([worker_a, worker_b])
    assert report["square"]["items"] == 9 and report["square"]["seconds"] >= 0.5
    assert take_process_totals() == {}
