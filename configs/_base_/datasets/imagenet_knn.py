# Monitor an ImageNet pretraining run with the weighted k-NN (DINO's protocol, k=20,
# T=0.07) on the 50,000 validation images against a class-balanced bank of the
# training set. Add this file to a pretraining config's _base_ and set how often:
#   _base_ = [..., '../_base_/datasets/imagenet_knn.py']
#   train_cfg = dict(val_interval=50)   # epochs (iterations for iteration loops)
# Cost: one forward pass of the encoder (no masking) over bank + validation images,
# i.e. (100 x 1000 + 50,000) images with bank_per_class=100, at about a third of a
# CMAE training step's FLOPs per image: about 4 % of an epoch of 1.28 M images
# (docs/evaluation.md).
imagenet_root = 'data/imagenet/'
knn_eval_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(
    batch_size=256,
    num_workers=8,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageNet',
        data_root=imagenet_root,
        split='val',
        pipeline=knn_eval_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5), prefix='knn')
val_cfg = dict(
    type='KNNValLoop',
    # the training images, with the validation loader's settings
    bank_dataloader=dict(
        val_dataloader, dataset=dict(val_dataloader['dataset'], split='train')),
    bank_per_class=100,  # 100,000 images; None: all 1.28 M (DINO's full protocol)
    k=20,
    temperature=0.07,
    feature='mean',
    encoder='online',
    linear_probe=False)
