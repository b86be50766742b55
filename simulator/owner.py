"""The project owner's side: publish the initial model and the task spec, escrow the reward."""

from __future__ import annotations

from typing import TYPE_CHECKING

from eth_account.signers.local import LocalAccount

from market.data import Dataset, dataset_commitment
from market.roles import initial_model_blob
from market.spec import ModelSpec, ProofSpec, RobustSpec, TaskSpec, TrainingSpec, ValuationSpec
from market.store import put_json

if TYPE_CHECKING:
    from simulator.environment import Environment
    from simulator.simulate import SimulateConfig


#: local SGD settings per architecture: logistic regression converges in 3 rounds only with a
#: large step; the MLP and the CNN diverge with it (measured on digits, 3 rounds, 5-6 trainers).
TRAINING_FOR: dict[str, TrainingSpec] = {
    "logreg": TrainingSpec(),
    "mlp": TrainingSpec(lr=0.1, momentum=0.9),
    "cnn": TrainingSpec(lr=0.1, momentum=0.9),
}


def spec_for(cfg: "SimulateConfig") -> TaskSpec:
    base = TaskSpec()
    return base.model_copy(
        update={
            "model": ModelSpec(arch=cfg.model),  # type: ignore[arg-type]
            "training": TRAINING_FOR[cfg.model],
            "robust": RobustSpec(rule=cfg.robust, f=cfg.suspected),
            "valuation": ValuationSpec(rule=cfg.valuation, seed=cfg.seed),
            "proof": ProofSpec(system=cfg.proof, sketch_k=cfg.sketch_k),
            "model_seed": cfg.seed,
        }
    )


def publish_spec(env: "Environment", spec: TaskSpec) -> tuple[TaskSpec, str]:
    """Store the initial model, then the spec naming it; return (spec, spec CID)."""
    model_cid = env.store.put(initial_model_blob(spec))
    spec = TaskSpec.model_validate({**spec.model_dump(mode="json"), "initial_model_cid": model_cid})
    return spec, put_json(env.store, spec.model_dump(mode="json"))


def post_task(
    env: "Environment", owner: LocalAccount, aggregator: str, cfg: "SimulateConfig", validation: Dataset, reward: int
) -> tuple[int, TaskSpec]:
    spec, spec_cid = publish_spec(env, spec_for(cfg))
    assert spec.initial_model_cid
    verifier: dict[str, str] = {}
    if spec.proof.system != "none":
        from market.zk.deploy import deploy_round_verifier

        # rounds where every trainer's update is valid, or all but one
        sizes = {cfg.trainers, cfg.trainers - 1}
        verifier["verifier"] = deploy_round_verifier(env.chain, owner, spec, sizes, progress=None)
    task_id, _ = env.contract.create_task(
        owner,
        spec_cid=spec_cid,
        initial_model_cid=spec.initial_model_cid,
        validation_commitment=dataset_commitment(validation),
        aggregator=aggregator,
        rounds=cfg.rounds,
        reward_wei=reward,
        max_trainers=max(cfg.trainers, 1),
        **verifier,
    )
    return task_id, spec
