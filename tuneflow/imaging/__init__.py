"""Photos as the model reads them: one decoder, the decoded store kept across runs, the tf.data pipeline."""
