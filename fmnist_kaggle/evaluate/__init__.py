"""Evaluation: blends of runs with honest nested CV (`blend`, one method per file in `blenders/`),
submissions made from runs (`submission`), offline CV reports and scoring (`scoring`), and
fold-model activation maps (`explain`)."""
