"""A run from inputs to result: the inputs checked and prepared, the network built,
training stage by stage, the final pass, the result; stacks, batches and folders of
images; saved networks.
"""
