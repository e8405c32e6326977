import apache_beam as beam

from hyperscene.transforms.progress import Progress, stage_report, stage_timer


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
