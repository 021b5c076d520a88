"""GFN2-xTB molecular dynamics of an MD17 molecule, in MD17's conditions, written in chunks.

Run by `sgdd data generate md17-xtb` (which installs the packages and assembles the chunks into an
MD17-format npz); usable alone:

    python datasets/md17_xtb.py --molecule aspirin --steps 2000 --seed 0 --out DIR

Physics: GFN2-xTB energies and analytic forces from tblite (through its ase calculator), start
geometry from RDKit (ETKDG embedding with the seed, then MMFF94 relaxation), Maxwell-Boltzmann
velocities and Langevin dynamics at 500 K with a 0.5 fs step (friction 0.002 / fs), as MD17 was
sampled at 500 K with 0.5 fs.

Output in DIR:
- chunk_NNNNN.npz: `R` (c, N, 3) Å, `E` (c,) kcal/mol, `F` (c, N, 3) kcal/mol/Å for steps
  [NNNNN·chunk + 1, ...], `z` (N,), and the state after the chunk's last step (`state_positions`,
  `state_momenta`), written atomically (temporary file, then rename);
- progress.json: steps done, seconds spent, seconds per step.

A killed run started again with the same arguments continues after the last complete chunk. The
Langevin noise of chunk k is drawn from a generator seeded with (seed, k), so a resumed run gives the
same trajectory as an uninterrupted one.
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

SMILES = {
    "aspirin": "CC(=O)OC1=CC=CC=C1C(=O)O",
    "benzene": "c1ccccc1",
    "ethanol": "CCO",
    "malonaldehyde": "O=CCC=O",
    "naphthalene": "c1ccc2ccccc2c1",
    "salicylic_acid": "O=C(O)c1ccccc1O",
    "toluene": "Cc1ccccc1",
    "uracil": "O=C1C=CNC(=O)N1",
}


def start_geometry(smiles, seed):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise SystemExit(f"RDKit could not embed {smiles}")
    AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()], dtype=np.int64)
    positions = mol.GetConformer().GetPositions()
    return numbers, positions


def save_atomic(path, **arrays):
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--molecule", required=True, choices=sorted(SMILES))
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--chunk", type=int, default=1000)
    p.add_argument("--temperature", type=float, default=500.0)
    p.add_argument("--timestep-fs", type=float, default=0.5)
    p.add_argument("--friction-per-fs", type=float, default=0.002)
    a = p.parse_args()
    if a.steps < 1 or a.chunk < 1:
        raise SystemExit("--steps and --chunk must be >= 1")

    from ase import Atoms, units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from tblite.ase import TBLite

    a.out.mkdir(parents=True, exist_ok=True)
    # one writer per directory: a second run (e.g. started while a killed parent's child still
    # runs) stops here instead of interleaving chunks
    import fcntl

    lock = open(a.out / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SystemExit(f"{a.out} is being written by another run")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items() if k not in ("steps", "out")}
    settings_path = a.out / "settings.json"
    if settings_path.exists():
        old = json.loads(settings_path.read_text())
        if old != settings:
            raise SystemExit(f"{a.out} holds a run with other settings {old}; use another --out")
    else:
        settings_path.write_text(json.dumps(settings, indent=1) + "\n")

    numbers, positions = start_geometry(SMILES[a.molecule], a.seed)
    atoms = Atoms(numbers=numbers, positions=positions)
    atoms.set_constraint(FixCom())
    atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
    ev_to_kcal = 1.0 / (units.kcal / units.mol)

    n_chunks = (a.steps + a.chunk - 1) // a.chunk
    done = 0
    while (a.out / f"chunk_{done:05d}.npz").exists():
        done += 1
    if done > 0:
        # a short last chunk (from an earlier, shorter request) is redone in full: its noise
        # comes from the same generator, so the steps it had come out the same
        with np.load(a.out / f"chunk_{done - 1:05d}.npz") as last:
            short = len(last["E"]) < a.chunk
        if short and done * a.chunk < a.steps:
            (a.out / f"chunk_{done - 1:05d}.npz").unlink()
            done -= 1
    if done > 0:
        with np.load(a.out / f"chunk_{done - 1:05d}.npz") as last:
            atoms.set_positions(last["state_positions"])
            atoms.set_momenta(last["state_momenta"])
        print(f"resuming after {done} complete chunks ({done * a.chunk} steps)", flush=True)
    else:
        MaxwellBoltzmannDistribution(atoms, temperature_K=a.temperature, rng=np.random.default_rng(a.seed))

    progress_path = a.out / "progress.json"
    seconds, timed_steps = 0.0, 0
    if done > 0 and progress_path.exists():
        prev = json.loads(progress_path.read_text())
        seconds, timed_steps = prev["seconds"], prev["timed_steps"]
    for k in range(done, n_chunks):
        steps = min(a.chunk, a.steps - k * a.chunk)
        dyn = Langevin(
            atoms,
            timestep=a.timestep_fs * units.fs,
            temperature_K=a.temperature,
            friction=a.friction_per_fs / units.fs,
            rng=np.random.default_rng([a.seed, k]),
            fixcm=False,
        )
        R = np.empty((steps, len(atoms), 3))
        F = np.empty((steps, len(atoms), 3))
        E = np.empty(steps)
        t0 = time.perf_counter()
        for i in range(steps):
            dyn.run(1)
            R[i] = atoms.get_positions()
            F[i] = atoms.get_forces() * ev_to_kcal
            E[i] = atoms.get_potential_energy() * ev_to_kcal
        dt = time.perf_counter() - t0
        seconds += dt
        timed_steps += steps
        save_atomic(
            a.out / f"chunk_{k:05d}.npz",
            R=R, E=E, F=F, z=numbers,
            state_positions=atoms.get_positions(), state_momenta=atoms.get_momenta(),
        )
        total = k * a.chunk + steps
        progress_path.write_text(json.dumps({
            "molecule": a.molecule, "done_steps": total, "steps": a.steps, "chunks": k + 1,
            "seconds": seconds, "timed_steps": timed_steps, "ms_per_step": 1000.0 * seconds / timed_steps,
        }, indent=1) + "\n")
        print(f"chunk {k + 1}/{n_chunks}: {total}/{a.steps} steps, {1000.0 * dt / steps:.2f} ms/step", flush=True)


if __name__ == "__main__":
    main()
