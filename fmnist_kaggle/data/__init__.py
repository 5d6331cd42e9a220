"""Data: image files in every supported format read into one canonical `ImageSet` (`images`,
one reader per format in `formats/`), competition configs (`competition`), fold assignments
(`folds`), train/test drift (`drift`) and the submission-file format (`submission_file`)."""
