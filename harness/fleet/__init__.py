"""Work shared between processes and machines through an Optuna storage: where a study lives and how a
dead worker's item comes back (storage), and a benchmark whose cells many workers take (benchmark).
The tuner's studies use the same storage layer; nothing here depends on tuning."""
