"""tfislr.export"""
