"""Dataset export: cases in, a dataset a training framework reads out.

One room per idea: :mod:`.cases` (the value types), :mod:`.privacy` (pseudonyms, the sidecar
allow-list, the key file), :mod:`.splits` (patient-level folds and test set), and the format
modules :mod:`.nnunet`, :mod:`.msd`, :mod:`.plain`, which only lay out a case's files and write
the dataset's index. The runner that loads, processes and writes the cases sits on top of them.
"""
