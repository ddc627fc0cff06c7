# k-NN / linear-probe evaluation on Fashion-MNIST (MMPretrain's FashionMNIST: 60,000
# training / 10,000 test images, test_mode=True selects the test split), at 32 px.
# Prepare the data with tools/study/fashion_mnist_study.py (or
# prepare_fashion_mnist in tools/study/fashion_mnist_data.py).
fmnist_root = 'data/fashion_mnist/'
fmnist_eval_pipeline = [
    dict(type='GrayToBGR'),  # (28, 28) gray -> 3 equal channels
    dict(type='Resize', scale=32, interpolation='bicubic', backend='pillow'),
    dict(type='PackInputs'),
]
val_dataloader = dict(
    batch_size=500,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='FashionMNIST',
        data_root=fmnist_root,
        test_mode=True,
        download=False,
        pipeline=fmnist_eval_pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, 5), prefix='knn')
val_cfg = dict(
    type='KNNValLoop',
    # bank: the first 500 training images of each class (5,000 in all), with the
    # validation loader's settings
    bank_dataloader=dict(
        val_dataloader, dataset=dict(val_dataloader['dataset'], test_mode=False)),
    bank_per_class=500,
    k=20,  # InstDisc (Wu et al., 2018) / DINO (Caron et al., 2021)
    temperature=0.07,
    feature='mean',
    encoder='online',
    linear_probe=True)
