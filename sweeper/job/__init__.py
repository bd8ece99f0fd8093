"""One job: its typed description built from the composed config, the task Hydra runs, its
progress.
"""
