"""The scheduler's rules (cluster.scheduler), one test each: plain data in, a plan out."""

from __future__ import annotations

from cluster.scheduler import Capacity, LicenseSlots, NodeType, QueuedJob, plan

CPU, GPU = {"CPU": 1.0}, {"CPU": 1.0, "GPU": 1.0}
TWO_CPUS = Capacity(nodes=({"CPU": 2.0},))
HEAD_ONLY = ({"CPU": 0.0},)  # a cloud config's head: it takes no training
AUTOSCALING = Capacity(
    nodes=HEAD_ONLY,
    node_types=(NodeType("cpu_worker", {"CPU": 1.0}, 3), NodeType("gpu_worker", {"CPU": 1.0, "GPU": 1.0}, 1)),
)
TEXT = LicenseSlots("text", ("training:ner", "training:classification"), 8)


def ner(job_id: int, bundle=CPU, wanted: int = 1, scope: str = "training:ner") -> QueuedJob:
    return QueuedJob(job_id, scope, bundle, wanted)


def test_a_job_that_fits_starts_with_a_license_slot():
    result = plan([ner(1)], {"CPU": 2.0}, TWO_CPUS, [TEXT])
    assert [(s.job_id, s.slots, s.licenses) for s in result.starts] == [(1, 1, ("text",))]
    assert result.waits == {} and result.demand == []


def test_jobs_beyond_the_free_bundles_wait_for_a_cpu_on_a_fixed_cluster_and_ask_for_nothing():
    result = plan([ner(1), ner(2), ner(3)], {"CPU": 2.0}, TWO_CPUS, [TEXT])
    assert [s.job_id for s in result.starts] == [1, 2]
    assert result.waits == {3: "waiting for 1 CPU"} and result.demand == []


def test_a_waiting_job_does_not_hold_back_a_later_one_that_fits():
    result = plan([ner(1, GPU), ner(2)], {"CPU": 1.0}, Capacity(nodes=({"CPU": 1.0, "GPU": 1.0},)), [TEXT])
    assert [s.job_id for s in result.starts] == [2]
    assert result.waits == {1: "waiting for 1 GPU"}


def test_a_job_without_a_free_license_slot_waits_for_one():
    one = LicenseSlots("one", ("training:ner",), 1)
    result = plan(
        [ner(1), ner(2), ner(3, scope="training:classification")], {"CPU": 3.0}, Capacity(nodes=({"CPU": 3.0},)), [one]
    )
    assert [s.job_id for s in result.starts] == [1]
    assert result.waits == {
        2: "waiting for a license with scope training:ner",
        3: "waiting for a license with scope training:classification",
    }


def test_on_an_autoscaling_cluster_a_job_that_does_not_fit_is_demand_and_says_a_node_is_coming():
    result = plan([ner(1), ner(2, GPU)], {"CPU": 0.0}, AUTOSCALING, [TEXT])
    assert result.starts == []
    assert result.waits == {
        1: "waiting for 1 CPU (the autoscaler is adding a node)",
        2: "waiting for 1 CPU + 1 GPU (the autoscaler is adding a node)",
    }
    assert result.demand == [CPU, GPU]


def test_a_job_waiting_for_a_license_adds_no_node():
    ner_only = LicenseSlots("ner-only", ("training:ner",), 1)
    result = plan([ner(1, scope="training:classification")], {"CPU": 0.0}, AUTOSCALING, [ner_only])
    assert result.waits == {1: "waiting for a license with scope training:classification"}
    assert result.demand == []


def test_a_license_slot_spoken_for_by_a_job_waiting_for_a_node_is_not_promised_twice():
    one = LicenseSlots("one", ("training:ner",), 1)
    result = plan([ner(1), ner(2)], {"CPU": 0.0}, AUTOSCALING, [one])
    assert result.waits == {
        1: "waiting for 1 CPU (the autoscaler is adding a node)",
        2: "waiting for a license with scope training:ner",
    }
    assert result.demand == [CPU]  # one node for the one job that may run


def test_a_job_starts_as_soon_as_a_node_with_its_bundle_has_joined():
    grown = Capacity(nodes=HEAD_ONLY + ({"CPU": 1.0},), node_types=AUTOSCALING.node_types)
    result = plan([ner(1)], {"CPU": 1.0}, grown, [TEXT])
    assert [s.job_id for s in result.starts] == [1] and result.demand == []


def test_a_search_takes_as_many_bundles_as_are_free_up_to_its_trials():
    result = plan([ner(1, wanted=4), ner(2)], {"CPU": 3.0}, Capacity(nodes=({"CPU": 3.0},)), [TEXT])
    assert [(s.job_id, s.slots) for s in result.starts] == [(1, 3)]
    assert result.waits == {2: "waiting for 1 CPU"}


def test_a_search_takes_no_more_slots_than_its_license_has():
    two = LicenseSlots("two", ("training:ner",), 2)
    result = plan([ner(1, wanted=4)], {"CPU": 4.0}, Capacity(nodes=({"CPU": 4.0},)), [two])
    assert [(s.slots, s.licenses) for s in result.starts] == [(2, ("two", "two"))]


def test_free_resources_split_over_nodes_are_not_a_place_for_a_bundle():
    apart = Capacity(nodes=({"CPU": 1.0}, {"GPU": 1.0}))  # a CPU here, a GPU there: no node has both
    result = plan([ner(1, GPU)], {"CPU": 1.0, "GPU": 1.0}, apart, [TEXT])
    assert result.starts == [] and result.waits == {1: "waiting for 1 CPU + 1 GPU"}


def test_a_bundle_no_node_and_no_node_type_can_hold_is_impossible_and_says_why():
    assert AUTOSCALING.impossible(GPU) is None  # none now, but the autoscaler has a GPU type
    assert TWO_CPUS.impossible(CPU) is None
    fixed = TWO_CPUS.impossible(GPU)
    assert fixed == (
        "a 1 CPU + 1 GPU bundle fits no node of this cluster (it has 0 GPU) and the cluster has no autoscaler"
    )
    cpu_only = Capacity(nodes=HEAD_ONLY, node_types=(NodeType("cpu_worker", {"CPU": 8.0}, 4),))
    assert cpu_only.impossible(GPU) == (
        "a 1 CPU + 1 GPU bundle fits no node of this cluster (it has 0 CPU, "
        "0 GPU) and no node type its autoscaler can add (cpu_worker: 8 CPU)"
    )
    assert (
        Capacity(nodes=HEAD_ONLY)
        .impossible(CPU)
        .startswith("a 1 CPU bundle fits no node of this cluster (it has 0 CPU)")
    )


def test_the_most_a_cluster_may_have_counts_what_its_node_types_may_add():
    assert AUTOSCALING.max_resource("CPU") == 4.0 and AUTOSCALING.max_resource("GPU") == 1.0
    assert TWO_CPUS.max_resource("GPU") == 0.0


def lone(job_id: int, bundle=CPU, wanted: int = 1) -> QueuedJob:
    """A job that asked for no CPU count (`labtrain train` without --cpus)."""
    return QueuedJob(job_id, "training:ner", bundle, wanted, grows=True)


def test_a_lone_job_without_a_cpu_count_takes_the_largest_node_of_an_idle_fixed_cluster():
    result = plan([lone(1)], {"CPU": 2.0}, TWO_CPUS, [TEXT])
    assert [(s.job_id, s.slots, s.bundle) for s in result.starts] == [(1, 1, {"CPU": 2.0})]
    two_nodes = Capacity(nodes=({"CPU": 4.0}, {"CPU": 8.0}))
    assert plan([lone(1)], {"CPU": 12.0}, two_nodes, [TEXT]).starts[0].bundle == {"CPU": 8.0}
    # no more than Ray has free now, nor than the cap
    assert plan([lone(1)], {"CPU": 12.0}, two_nodes, [TEXT], alone_cpus=3.5).starts[0].bundle == {"CPU": 3.0}
    assert plan([lone(1)], {"CPU": 2.0}, TWO_CPUS, [TEXT], alone_cpus=0.0).starts[0].bundle is None


def test_jobs_that_arrive_together_or_beside_a_running_one_keep_one_cpu_each():
    together = plan([lone(1), lone(2)], {"CPU": 2.0}, TWO_CPUS, [TEXT])
    assert [(s.job_id, s.bundle) for s in together.starts] == [(1, None), (2, None)]
    beside = plan([lone(3)], {"CPU": 1.0}, TWO_CPUS, [TEXT])  # one CPU is held by a running job
    assert [(s.job_id, s.bundle) for s in beside.starts] == [(3, None)]


def test_a_lone_job_keeps_its_bundle_on_an_autoscaling_cluster_with_a_cpu_count_or_as_a_search():
    nodes = Capacity(nodes=({"CPU": 4.0},), node_types=AUTOSCALING.node_types)
    assert plan([lone(1)], {"CPU": 4.0}, nodes, [TEXT]).starts[0].bundle is None  # node types size the jobs
    assert plan([ner(1, {"CPU": 2.0})], {"CPU": 4.0}, Capacity(nodes=({"CPU": 4.0},)), [TEXT]).starts[0].bundle is None
    search = plan([lone(1, wanted=4)], {"CPU": 2.0}, TWO_CPUS, [TEXT]).starts[0]
    assert (search.slots, search.bundle) == (2, None)  # a search's trials take one CPU each


def test_a_job_asking_for_more_cpus_than_any_node_has_is_impossible_and_says_why():
    assert TWO_CPUS.impossible({"CPU": 4.0}) == (
        "a 4 CPU bundle fits no node of this cluster (it has 2 CPU) and the cluster has no autoscaler"
    )
    result = plan([ner(1, {"CPU": 2.0}), ner(2)], {"CPU": 1.0}, TWO_CPUS, [TEXT])
    assert [s.job_id for s in result.starts] == [2] and result.waits == {1: "waiting for 1 CPU"}
