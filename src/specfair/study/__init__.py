"""The dose-response study: does fine-tuning the drafter close the per-task gap?"""
