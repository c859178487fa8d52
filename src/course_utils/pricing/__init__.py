"""Part 3, pricing: items, prices, the Mercari and Amazon data, evaluation, the results store and leaderboard, baselines, the frontier and fine-tuned pricers, the RAG pricer and the ensemble."""
