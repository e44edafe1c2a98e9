"""The policy: model loading, action scoring, prompts, rollouts and trainers."""
